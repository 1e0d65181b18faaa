"""PEToolBench evaluation: scoring, error taxonomy, runners, reports."""
