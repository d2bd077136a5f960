"""The exit handoff: contract, draft build, narrative and the CI gate."""
