"""The data plane on a real GPU: the operator's rendered vLLM configuration served on a lent H200.

Local side (this machine, the operator's own code): ``cases`` renders TeleChatDeployments into the exact
command, environment and files of the vLLM container; ``stage`` copies them with the device-side modules
into an ignored folder of the checkout that travels with a device call. Device side (stdlib, aiohttp and
the carried vLLM): ``device`` generates random-weight checkpoints at the catalog's shapes, runs each case,
and writes one results file. ``report`` turns results into markdown; ``schema`` is what CI checks.
"""
