"""TeleChatDeployment: TeleChat2 served by vLLM's OpenAI server (a Deployment, a Service, engine config)."""
