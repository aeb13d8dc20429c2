"""The ground floor: the types every subsystem shares and none owns.

- ``bars``: ``BarBatch``, the columnar unit of market data on every hop;
- ``calendar``: trading calendars, bar frequencies and the annualisation they imply;
- ``decisions``: what a model sends the ledger (``Decisions``), the typed ``DecisionId`` of one
  decision, and the explanations of the weights that changed;
- ``orders``: orders, fills and round trips, the closed sets of sides, statuses, reject and halt
  reasons, and the cause of a staged target (a model's decision or a risk halt).

Everything here is plain data with numpy: no Ray, no model code, no I/O. Every other package
imports down into it; it imports nothing of ``titan_ray`` outside itself.
"""
