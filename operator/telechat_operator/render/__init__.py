"""Pure rendering: a TeleChatDeployment spec in, Kubernetes objects (plain dicts) out. No API calls."""

from .deployment_set import Owner, RenderedSet, render_deployment_set

__all__ = ["Owner", "RenderedSet", "render_deployment_set"]
