"""The storage-client interface: every remote storage call the client side makes.

``interface`` defines it (typed results and errors); ``foolscap`` speaks it
over ``RIStorageServer``; ``fake`` calls a StorageServer object in this
process, with fault switches, for tests.  ``immutable/``, ``mutable/`` and
``dirnode/`` talk to servers through nothing else.
"""
