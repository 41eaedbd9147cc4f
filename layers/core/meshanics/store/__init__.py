"""The storage package: the only code that knows table names, keys, indexes and the `#TENANT` item.

Use cases hand it domain objects (`meshanics.model`) and get domain objects back. One helper makes
every batch and transaction call with one retry policy (`batch`); item plumbing is in `items`.

The table map (also in docs/architecture.md): key -> item; the module that writes it.

Audit table (`AUDIT_TABLE`; `partition`, `sequence`; its stream, INSERT only, drives the fan-out):

    <tenant>#<shard> / <sequence>
        an event: `body` (the envelope, serialized once), `endpoints` (matched when written), type,
        subject, actor, times; TTL. shard = crc32(subject) % AUDIT_SHARDS.   audit (append only)

Integrations table (`INTEGRATIONS_TABLE`; `pk`, `sk`; sparse GSI `failed` on `gsi1pk`/`gsi1sk`):

    T#<tenant> / #TENANT
        `sequence` (the counter sequences are reserved from, in blocks), `endpoint_count`,
        `registry_count`.                                  tenants (counts: in the owners' transactions)
    T#<tenant> / EP#<endpoint id>
        an endpoint and its sealed secret(s).                                               endpoints
    T#<tenant>#SUB#<filter key> / <endpoint id>
        the subscription index (`a.b`, `a.*`, `*`).                  endpoints (same transaction)
    T#<tenant>#EP#<endpoint id> / D#<sequence, 20 digits>
        a delivery and its attempts, written at its first attempt; a failed one also has
        gsi1pk = FAILED#<0..7>, gsi1sk = when (the `failed` index).                         deliveries
    KEY#<key id> / #KEY
        an API key: the SHA-256 of its secret, tenant, scopes.                                 apikeys
    T#<tenant> / KEY#<key id>
        the tenant's listing of its keys (no hash).                          apikeys (same transaction)
    T#<tenant> / REG#<registry id>
        a registry connection and its sealed credentials.                                   registries
    T#<tenant> / REGNAME#<name>
        the name index of connections (unique per tenant).                registries (same transaction)
    T#<tenant>#REG#<registry id> / <repository>@<digest>
        what the tenant pulled through a connection (it authorizes blobs); TTL.                  pulls
    T#<tenant>#FILL / <digest>
        a cache fill lease; TTL.                                                                leases
    T#<tenant>#EPH#<endpoint id> / HEALTH, H#<yyyymmddhh>
        an endpoint's health, and its hourly tallies; TTL.                                      health
    T#<tenant>#RPL / <replay id>
        a recovery: window, status, cursor, counts, the run's lease; TTL.                   recoveries

Every key built from a caller's tenant starts with that tenant, so no key built for one tenant can
address another tenant's item.
"""
