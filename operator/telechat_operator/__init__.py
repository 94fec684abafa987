"""telechat-operator: serve China Telecom's TeleChat2 models on vLLM from one Kubernetes resource."""

__version__ = "0.1.0"
