"""Evaluation: pictures now; metrics on classifier features live beside them."""
