"""Prints pip constraints pinning every dependency of pyproject.toml at its lower bound.

`bash .ci/lowest` installs genjax with these pins in a fresh venv and runs the suite, so the
bounds pyproject.toml states are bounds a test run has used, not guesses. Run by hand (it is
not part of `.ci/run`): after raising a bound, or when a new release of a dependency lands.
Usage: python .ci/lowest_pins.py [extra ...]   (extras besides the main dependencies, e.g. test)
"""
import re
import sys
import tomllib
from pathlib import Path

# A package whose release must match another's: jaxlib is jax's compiled half, not named in
# pyproject.toml, and pip would otherwise take its newest release beside an old jax.
COMPANIONS = {"jax": ("jaxlib",)}
BOUND = re.compile(r"^([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][A-Za-z0-9.]*)\s*$")


def lower_bounds(requirements):
  """{name: version} from requirements written `name>=version`; anything else is an error."""
  pins = {}
  for requirement in requirements:
    match = BOUND.match(requirement)
    if match is None:
      raise ValueError(f"{requirement!r}: every dependency needs one lower bound, `name>=x.y`")
    name, version = match.groups()
    pins[name] = version
    pins.update({companion: version for companion in COMPANIONS.get(name, ())})
  return pins


def main(extras):
  project = tomllib.loads(Path(__file__).parents[1].joinpath("pyproject.toml").read_text())
  project = project["project"]
  requirements = list(project["dependencies"])
  for extra in extras:
    requirements += project["optional-dependencies"][extra]
  for name, version in lower_bounds(requirements).items():
    print(f"{name}=={version}")


if __name__ == "__main__":
  main(sys.argv[1:])
