"""bt-flywheel: an evidence-backed improvement loop for Braintrust-logged LLM agents."""

__version__ = "0.1.0"
