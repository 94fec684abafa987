"""The TeleChatDeployment API: typed spec (pydantic), constants and the CRD generated from them."""
