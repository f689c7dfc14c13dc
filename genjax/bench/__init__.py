"""Benchmarking genjax: epoch timing (compile apart), environment capture, reports."""
from genjax.bench.env import device_description, environment
from genjax.bench.report import add_ratios, to_json, to_markdown
from genjax.bench.suite import baseline_row, genjax_row, parse_variant, run_suite
from genjax.bench.timing import EpochTiming, cost_analysis, time_epoch

__all__ = ["EpochTiming", "add_ratios", "baseline_row", "cost_analysis", "device_description",
           "environment", "genjax_row", "parse_variant", "run_suite", "time_epoch", "to_json",
           "to_markdown"]
