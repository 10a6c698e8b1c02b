"""Mutable files (SDMF and MDMF): server map, retrieve, publish, in-place update, file nodes.

The node maker needs only `lafs.mutable.filenode`:

* ``MutableContext(servers_for, secrets, params, reactor, key_pool=KeyPool(reactor))``, one per client;
* ``await context.create_mutable_file(source, mdmf=False)`` publishes a new file;
* ``context.node_for_cap(cap)`` wraps an SSK/MDMF write or read cap in a `MutableFileNode`.

Nodes read, overwrite, update (MDMF in place), modify (with retries), check/verify and repair.
Below that: `servermap.update_servermap`, `retrieve.retrieve`, `publish.publish_version`,
`publish.update_in_place`, `checker.check` (a verify cap suffices); the pure parts are in
`encode` and `common`, which also holds the error types.  Nothing here
touches a socket: servers are reached through ``lafs.storage_client.interface`` only.
"""
