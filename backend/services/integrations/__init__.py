"""Integration tokens: one encrypted store for every (user, provider) OAuth token.

The public entry point is ``unified_token_service.UnifiedTokenService``; ``factory``
builds one from the settings. Modules are imported directly (this package imports
nothing itself), so ``records`` stays cheap for callers that only need the types.
"""
