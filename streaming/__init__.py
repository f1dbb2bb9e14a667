"""Serving the avatar live: aiohttp app, WebRTC tracks, sessions and their media clock."""
