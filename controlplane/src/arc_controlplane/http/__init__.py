"""The HTTP conventions every route shares, whichever API it belongs to: Azure Resource
Manager's error bodies, api-versions, paths, paging, conditional requests and long-running
operations, plus the edge guards (limits, connection guard, request context, caller, audit)."""
