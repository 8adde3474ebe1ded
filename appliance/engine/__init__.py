"""The engine boundary: what the scheduler drives, whatever backend runs the step."""
