"""Self-service handlers: one module per action an FAQ answer can offer (e.g. ``password_reset``).

Each follows the ``Handler`` protocol of ``bot/dialogue/flow.py``: it works inside the turn's
transaction through a ``FlowContext`` and never sees the channel; the engine stores its state.
"""
