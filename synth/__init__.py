"""PEToolBench synthesis pipeline."""
