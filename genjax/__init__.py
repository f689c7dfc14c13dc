"""genjax: generative image models in JAX, trained by pure jitted steps."""
__version__ = "0.1.0"
