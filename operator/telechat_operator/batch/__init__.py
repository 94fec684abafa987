"""TeleChatBatchJob: vLLM's batch mode (OpenAI batch JSONL in, JSONL out) run as a Kubernetes Job."""
