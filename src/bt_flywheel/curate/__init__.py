"""Curation: selecting, labeling, splitting and upserting dataset rows."""
