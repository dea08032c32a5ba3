"""localstripe (PyPI) made fit for the Airbar tests.

localstripe is a stateful Stripe emulator. This shim, started by the Rust test support code:
  * binds 127.0.0.1 only, on the port given (localstripe itself binds every interface);
  * adds the fields async-stripe 1.0 requires that localstripe omits (PaymentIntent:
    amount_capturable, amount_received, confirmation_method, payment_method_types; Charge:
    amount_captured, billing_details, disputed; Event: pending_webhooks, request) and sends
    `latest_charge` as an id, as Stripe does;
  * accepts `transfer_group` on PaymentIntents and a `created[...]` range on listings;
  * honours `Idempotency-Key` (the first response to a key is replayed, like Stripe);
  * fakes the Connect endpoints the service uses, which localstripe lacks: accounts
    (POST/GET /v1/accounts), transfers (POST/GET /v1/transfers, reversals).
Run: python3 localstripe_shim.py --port 8420
"""

import argparse
import asyncio
import os
import secrets
import time

from aiohttp import web
from localstripe import resources

# --- confirming with a payment method ---------------------------------------------------
# Stripe confirms an intent with a (new) payment method in one call, also after a decline;
# localstripe only confirms an intent whose method was set at creation. Patched before the
# server module registers its routes.

_orig_confirm = resources.PaymentIntent._api_confirm.__func__


def _api_confirm(cls, id, payment_method=None, **kwargs):
    if payment_method is not None:
        obj = cls._api_retrieve(id)
        resources.PaymentMethod._api_retrieve(payment_method)  # 404 when unknown
        obj.payment_method = payment_method
        obj.next_action = None
        if obj.latest_charge is not None and obj.latest_charge.status == "failed":
            obj.latest_charge = None
    return _orig_confirm(cls, id, **kwargs)


resources.PaymentIntent._api_confirm = classmethod(_api_confirm)
resources.extra_apis[:] = [
    (m, u, resources.PaymentIntent._api_confirm if u == "/v1/payment_intents/{id}/confirm" else f)
    for (m, u, f) in resources.extra_apis
]

from localstripe import server  # noqa: E402  (after the patch above)

# --- fields async-stripe requires -------------------------------------------------------

_orig_export = resources.StripeObject._export


def _export(self, expand=None):
    obj = _orig_export(self, expand=expand)
    kind = getattr(self, "object", None)
    if kind == "payment_intent":
        succeeded = obj.get("status") == "succeeded"
        obj.setdefault("amount_capturable", 0)
        obj["amount_received"] = obj["amount"] if succeeded else 0
        obj.setdefault("confirmation_method", "automatic")
        obj.setdefault("payment_method_types", ["card"])
        obj.setdefault("transfer_group", None)
        if isinstance(obj.get("latest_charge"), dict):
            obj["latest_charge"] = obj["latest_charge"]["id"]
        if isinstance(obj.get("last_payment_error"), dict):
            obj["last_payment_error"].setdefault("type", "card_error")
        obj.pop("charges", None)
    elif kind == "charge":
        obj.setdefault("amount_captured", obj["amount"] if obj.get("captured") else 0)
        obj.setdefault("amount_refunded", 0)
        obj["billing_details"] = obj.get("billing_details") or {}
        obj.setdefault("disputed", False)
        obj.setdefault("refunded", False)
        obj.setdefault("paid", obj.get("status") == "succeeded")
        obj.setdefault("metadata", {})
        obj.pop("source", None)
        obj.pop("payment_method_details", None)
        obj.pop("outcome", None)
        obj.pop("refunds", None)
    elif kind == "event":
        # The objects are rendered in the shape of the API version async-stripe speaks.
        obj["api_version"] = "2026-09-30.endive"
        obj.setdefault("pending_webhooks", 1)
        obj.setdefault("request", {"id": None, "idempotency_key": None})
    return obj


resources.StripeObject._export = _export

_orig_pi_init = resources.PaymentIntent.__init__


def _pi_init(self, transfer_group=None, automatic_payment_methods=None, **kwargs):
    _orig_pi_init(self, **kwargs)
    self.transfer_group = transfer_group


resources.PaymentIntent.__init__ = _pi_init


def _in_range(created, bounds):
    if not isinstance(bounds, dict):
        return True
    for op, test in (("gt", lambda a, b: a > b), ("gte", lambda a, b: a >= b),
                     ("lt", lambda a, b: a < b), ("lte", lambda a, b: a <= b)):
        if op in bounds and not test(created, int(bounds[op])):
            return False
    return True


def _listing(cls):
    orig = cls._api_list_all.__func__

    def list_all(klass, url, created=None, **kwargs):
        li = orig(klass, url, **kwargs)
        li._list = [o for o in li._list if _in_range(o.created, created)]
        return li

    cls._api_list_all = classmethod(list_all)


_listing(resources.PaymentIntent)
_listing(resources.Refund)

# --- Idempotency-Key --------------------------------------------------------------------

_replies = {}


@web.middleware
async def idempotency(request, handler):
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key:
        return await handler(request)
    slot = (request.path, key)
    if slot in _replies:
        status, body = _replies[slot]
        return web.Response(status=status, body=body, content_type="application/json",
                            headers={"Idempotent-Replayed": "true"})
    response = await handler(request)
    if response.status < 500 and hasattr(response, "body") and response.body is not None:
        _replies[slot] = (response.status, bytes(response.body))
    return response


server.app.middlewares.insert(0, idempotency)

# --- Connect fake -----------------------------------------------------------------------

_accounts = {}
_transfers = {}


def _id(prefix):
    return prefix + secrets.token_hex(8)


def _error(status, message, code=None):
    body = {"error": {"type": "invalid_request_error", "message": message}}
    if code:
        body["error"]["code"] = code
    return web.json_response(body, status=status)


async def create_account(request):
    data = await server.get_post_data(request) or {}
    metadata = data.get("metadata") or {}
    acct = {
        "id": _id("acct_"), "object": "account", "type": data.get("type", "express"),
        "country": data.get("country", "GB"), "email": data.get("email"),
        "charges_enabled": True,
        "payouts_enabled": metadata.get("payouts_enabled", "true") == "true",
        "details_submitted": True, "capabilities": {"transfers": "active"},
        "metadata": metadata, "created": int(time.time()),
    }
    _accounts[acct["id"]] = acct
    return web.json_response(acct)


async def get_account(request):
    acct = _accounts.get(request.match_info["id"])
    if acct is None:
        return _error(404, "No such account", "resource_missing")
    return web.json_response(acct)


def _reversals_url(tid):
    return "/v1/transfers/%s/reversals" % tid


async def create_transfer(request):
    data = await server.get_post_data(request) or {}
    destination = data.get("destination")
    acct = _accounts.get(destination)
    if acct is None:
        return _error(400, "No such destination: %s" % destination, "resource_missing")
    if acct["metadata"].get("reject_transfers") == "true":
        return _error(400, "The destination account cannot receive transfers.",
                      "account_invalid")
    try:
        amount = int(data.get("amount"))
        assert amount > 0
    except (TypeError, ValueError, AssertionError):
        return _error(400, "Invalid amount")
    tid = _id("tr_")
    transfer = {
        "id": tid, "object": "transfer", "amount": amount, "amount_reversed": 0,
        "currency": data.get("currency"), "destination": destination,
        "transfer_group": data.get("transfer_group"),
        "source_transaction": data.get("source_transaction"),
        "description": data.get("description"), "metadata": data.get("metadata") or {},
        "created": int(time.time()), "livemode": False, "reversed": False,
        "reversals": {"object": "list", "data": [], "has_more": False,
                      "url": _reversals_url(tid)},
    }
    _transfers[tid] = transfer
    return web.json_response(transfer)


async def get_transfer(request):
    transfer = _transfers.get(request.match_info["id"])
    if transfer is None:
        return _error(404, "No such transfer", "resource_missing")
    return web.json_response(transfer)


async def list_transfers(request):
    query = server.unflatten_data(request.query) or {}
    items = sorted(_transfers.values(), key=lambda t: (t["created"], t["id"]))
    items = [t for t in items if _in_range(t["created"], query.get("created"))]
    after = query.get("starting_after")
    if after:
        ids = [t["id"] for t in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    limit = int(query.get("limit", 10))
    return web.json_response({"object": "list", "url": "/v1/transfers",
                              "has_more": len(items) > limit, "data": items[:limit]})


async def reverse_transfer(request):
    transfer = _transfers.get(request.match_info["id"])
    if transfer is None:
        return _error(404, "No such transfer", "resource_missing")
    data = await server.get_post_data(request) or {}
    amount = int(data.get("amount") or transfer["amount"] - transfer["amount_reversed"])
    reversal = {"id": _id("trr_"), "object": "transfer_reversal", "amount": amount,
                "currency": transfer["currency"], "transfer": transfer["id"],
                "created": int(time.time()), "metadata": {}}
    transfer["amount_reversed"] += amount
    transfer["reversed"] = transfer["amount_reversed"] >= transfer["amount"]
    transfer["reversals"]["data"].append(reversal)
    return web.json_response(reversal)


for method, path, handler in (
        ("POST", "/v1/accounts", create_account),
        ("GET", "/v1/accounts/{id}", get_account),
        ("POST", "/v1/transfers", create_transfer),
        ("GET", "/v1/transfers", list_transfers),
        ("GET", "/v1/transfers/{id}", get_transfer),
        ("POST", "/v1/transfers/{id}/reversals", reverse_transfer)):
    server.app.router.add_route(method, path, handler)


async def _exit_with_parent(app):
    parent = os.getppid()

    async def watch():
        while os.getppid() == parent:
            await asyncio.sleep(0.5)
        os._exit(0)

    app["parent_watch"] = asyncio.ensure_future(watch())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started this one ends")
    args = parser.parse_args()
    # A fresh emulator each run (localstripe would reload its pickled state from /tmp).
    resources.store.clear()
    # localstripe pickles its whole store to /tmp after every write: slow and shared; skip it.
    resources.store.dump_to_disk = lambda *a, **k: None
    if args.exit_with_parent:
        server.app.on_startup.append(_exit_with_parent)
    web.run_app(server.app, host="127.0.0.1", port=args.port, print=None,
                access_log=None)


if __name__ == "__main__":
    main()
