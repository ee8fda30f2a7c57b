"""Thin helpers over the Azure SDK clients: ARM ids, one-shot LRO polling, error mapping.

Why a separate package: activities must stay short and side-effect-focused; the fiddly SDK
mechanics (resuming a poller from a continuation token without starting a polling thread,
turning ``HttpResponseError`` into a JSON-safe error dict, parsing ARM ids case-insensitively)
live here once and are unit-tested without a network.
"""
