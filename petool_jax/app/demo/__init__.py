"""`petool demo`: the whole PEToolLLM pipeline, offline, on a laptop CPU.

catalog_source.py  the built-in tool catalog's definition; catalog.json is generated from it
catalog.py         loading and checking catalog.json (ToolBench-style documents + groups + examples)
pipeline.py        the stages: synth -> tokenizer -> tiny LLaMA -> SFT -> DPO -> export -> eval
baselines.py       random choice among candidates (the only baseline eval/ lacks)
report.py          report.json / report.md / plots of the demo
"""
