"""PatchRings: ring-gated OS patch rollouts on Azure Update Manager.

The package is split so the pure decision logic (``patchrings.domain``) can be
tested without Azure, a host or a clock; everything that talks to the outside
world lives in the other subpackages and calls into the domain.
"""

__version__ = "0.1.0"
