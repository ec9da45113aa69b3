"""The AI SDK's UI message stream protocol: ``useChat`` (``@ai-sdk/react``, ``ai``'s
``DefaultChatTransport``) talking to a conversation of this app (docs/ai-sdk.md)."""
