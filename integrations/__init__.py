"""Adapters that put the avatar into voice-agent frameworks. They use the engine in process
(`integrations.local`) or a server of ours (`streaming.client`); nothing else imports them."""
