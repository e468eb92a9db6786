"""The medical plan as an input: beds, operating tables, surgical teams and evacuation lift (docs/capacity.md).

``plan`` describes and validates a plan, ``des`` is the compiled discrete-event simulation, ``model`` runs it
on the generator's blocks, ``report`` turns a run into what a planner reads.
"""
