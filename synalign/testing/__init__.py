"""Test utilities shipped with synalign (local OpenAI-compatible server)."""
