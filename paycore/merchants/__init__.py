"""Merchant onboarding, credentials, token authentication and context authorisation.

A merchant gets an id, the (order type, sub type) pairs and pay orgs it may use, an
API token and a notification signing secret. Both are shown once, at onboarding or at
their rotation, and never again.

**API tokens** are stored only as their SHA-256 hash (``merchant_api_tokens``; a random
256-bit token needs no slow hash: there is nothing to brute-force). :meth:`rotate_token`
issues a new token and lets the old ones work for a grace period (default 24 h, zero
for a leaked token); :meth:`revoke_token` refuses one at once; :meth:`disable` refuses
every call of the merchant (403 ``merchant_disabled``) until :meth:`enable`.

**Notification secrets** (``merchant_notify_secrets``) are the HMAC keys the platform
signs a merchant's notifications with: each merchant has its own, so no merchant can
sign (or verify) another's. An HMAC key has to be at hand in clear to sign, so it is
stored as it is (like the channel secrets): it is never logged, printed, put in an
error, shown after its creation, or carried in a ``repr``; reading it takes the
database's credentials, which already guard the money. (Wrapping it with a key from a
KMS is the next step once the platform has one; the columns would not change.)
:meth:`rotate_notify_secret` adds a new secret and keeps the old ones signing for an
overlap window (default 24 h): meanwhile every notification carries one signature per
secret, so the merchant switches its verifier at leisure. Merchants onboarded before
per-merchant secrets have none and are signed with the platform's shared key until
their first rotation (whose overlap then signs with the shared key and the new secret).

**Propagation.** Every replica caches token lookups and merchant rows for
``cache_ttl`` seconds (5 s): a revocation, a rotation's end or a disabling made through
another replica (the CLI, the console) takes effect everywhere within that time. A
token's expiry is checked against the clock on every call, cached or not.
"""

from .credentials import (
    DISABLED,
    SHARED_KEY_ID,
    MerchantInfo,
    describe,
    hash_token,
    notify_keys,
)
from .service import MerchantService

__all__ = [
    "DISABLED",
    "SHARED_KEY_ID",
    "MerchantInfo",
    "MerchantService",
    "describe",
    "hash_token",
    "notify_keys",
]
