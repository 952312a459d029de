"""What other programs may call: the read-only tools an agent uses over MCP.

Each tool is a typed function whose docstring says what it returns (the MCP server shows both to
the agent); each returns one JSON document as text, the same fields the matching CLI command
prints. Nothing here trains, labels, uploads or deletes: `playground/mcp.py` serves exactly
`tools.READ_ONLY` when PLAYGROUND_MCP=1, under the app's own access rules.
"""
