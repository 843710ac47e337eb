"""Direct messages between users (`/ws/chat/` and `/api/chat/`): threads, messages, read marks
and blocks in SQL (messages.py), and who is online (presence.py). No I/O of its own: the
private endpoint and the API run it on the storage threads."""
