"""The kind-generic controller: what every kind uses to reconcile.

Work queue and its gate, watch-fed indices (``cache``), plan and apply, conditions, Events, Secrets, pod
problems, the status writer, the ``Kind`` declaration and the kopf wiring written once (``registry``).
Nothing here knows a particular kind.
"""
