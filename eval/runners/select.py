"""`--model` value -> runner; heavy imports happen only for the one chosen."""

from __future__ import annotations


def make_runner(spec: str, options):
    """The runner for a --model value; heavy imports happen only for the one chosen."""
    if spec == "rule":
        from eval.runners.rule import RuleRunner

        return RuleRunner()
    if spec.startswith("openai:"):
        from eval.runners.openai_api import OpenAIRunner

        return OpenAIRunner(spec.removeprefix("openai:"), options)
    from eval.runners.jax_model import JaxModelRunner

    return JaxModelRunner(spec, options)
