"""`petool experiment`: the PEToolLLM recipe on a real PEToolBench release file.

split.py     the release split by entry into a pool half (tools, training data) and an evaluation half
config.py    the experiment config (YAML + key=value), its plans (cpu, full) and the paper's rows
pipeline.py  the stages: fetch model, split, synth from the pool half, SFT, DPO, export, eval, report
"""
