"""petool-jax: PEToolLLM (personalized tool learning) in JAX/Flax."""

__version__ = "0.1.0"
