"""The example loop, end to end, on examples/support-bot."""
