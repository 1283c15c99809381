"""The paper's experiment, built from directpo's public API (see assets.py for its inputs)."""
