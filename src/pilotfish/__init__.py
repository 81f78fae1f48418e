"""pilotfish: an Istio-compatible control plane for plain Envoy, without Kubernetes."""

__version__ = "0.1.0"
