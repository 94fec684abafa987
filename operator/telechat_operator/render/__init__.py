"""Pure rendering shared by every kind: vLLM engine files, the pod template, names, labels, owner metadata.

Each kind's own objects (a Deployment and Service, a Job) are rendered in its folder from these pieces.
"""

from .objects import Owner

__all__ = ["Owner"]
