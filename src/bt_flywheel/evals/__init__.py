"""Running Braintrust Eval files and the project's scorers."""
