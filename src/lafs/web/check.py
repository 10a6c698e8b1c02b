"""``POST $FILEURL?t=check``: check (``verify=``), repair (``repair=``) and renew leases on (``add-lease=``)
one file; the results as Tahoe's JSON (``output=JSON``) or as a page for a person, with a ``return_to=`` link."""

from __future__ import annotations

from typing import Any, Protocol

from twisted.web import http
from twisted.web.template import Element, renderer, tags

from lafs.core import base32
from lafs.core.check_results import CheckAndRepairResults, CheckResults
from lafs.web.common import WebError, get_arg, get_boolean_arg
from lafs.web.html import send_page, template
from lafs.web.info import json_body


class Checkable(Protocol):
    """What a check needs of a node (every file node has it)."""

    async def check(self, *, verify: bool = False, add_lease: bool = False) -> CheckResults: ...

    async def check_and_repair(self, *, verify: bool = False, add_lease: bool = False) -> CheckAndRepairResults: ...


def wants_json(request: Any) -> bool:
    """``output=JSON`` (any case), as Tahoe reads it."""
    return get_arg(request, "output").lower() == "json"


async def render_check(request: Any, node: Checkable) -> None:
    """Run the check the arguments ask for and answer with its results."""
    verify = get_boolean_arg(request, "verify")
    repair = get_boolean_arg(request, "repair")
    add_lease = get_boolean_arg(request, "add-lease")
    return_to = get_arg(request, "return_to")
    if return_to and not return_to.startswith("/") and "://" in return_to:
        # Only links within this gateway: a results page must not send a person elsewhere.
        raise WebError(http.BAD_REQUEST, "return_to= must be a path on this gateway (starting with /)")
    results: CheckResults | CheckAndRepairResults
    if repair:
        results = await node.check_and_repair(verify=verify, add_lease=add_lease)
    else:
        results = await node.check(verify=verify, add_lease=add_lease)
    if wants_json(request):
        if isinstance(results, CheckAndRepairResults) and results.pre.is_literal():
            body = json_body(request, results.pre.to_json())  # Tahoe gives a literal file's plain check results
        else:
            body = json_body(request, results.to_json())
        request.write(body)
        request.finish()
        return
    await send_page(request, CheckResultsPage(results, return_to))


def _details(results: CheckResults) -> Any:
    """The list Tahoe's results page shows."""
    items = [
        tags.li("Report: ", tags.pre("\n".join(results.report))),
        tags.li(f"Share Counts: need {results.count_shares_needed}-of-{results.count_shares_expected}, have {results.count_shares_good}"),
        tags.li(f"Happiness Level: {results.count_happiness}"),
        tags.li(f"Hosts with good shares: {results.count_good_share_hosts}"),
    ]
    if results.corrupt_shares:
        rows = [tags.tr(tags.th("Share ID"), tags.th("Node ID"))]
        rows += [tags.tr(tags.td(f"sh#{shnum}"), tags.td(tags.tt(server))) for server, _, shnum in results.corrupt_shares]
        items.append(tags.li("Corrupt shares: ", tags.table(*rows)))
    else:
        items.append(tags.li("Corrupt shares: none"))
    items.append(tags.li(f"Wrong Shares: {results.count_wrong_shares}"))
    rows = [tags.tr(tags.th("Share ID"), tags.th("Node ID"))]
    for name, servers in results.sharemap.items():
        rows += [tags.tr(tags.td(name), tags.td(tags.tt(server))) for server in servers]
    items.append(tags.li("Good Shares (sorted in share order): ", tags.table(*rows)))
    items.append(tags.li(f"Recoverable Versions: {results.count_recoverable_versions}"))
    items.append(tags.li(f"Unrecoverable Versions: {results.count_unrecoverable_versions}"))
    return tags.ul(*items)


def _status(results: CheckResults) -> str:
    return f"Healthy : {results.summary}" if results.healthy else f"Not Healthy! : {results.summary}"


class CheckResultsPage(Element):
    """The results of a check, or of a check and repair, for a person (as Tahoe's page shows them)."""

    loader = template("check_results.xml")

    def __init__(self, results: CheckResults | CheckAndRepairResults, return_to: str = "") -> None:
        super().__init__()
        self._results = results
        self._return_to = return_to
        self._check = results.pre if isinstance(results, CheckAndRepairResults) else results

    @renderer
    def title(self, request: Any, tag: Any) -> Any:
        check = self._check
        if check.storage_index is None:
            return tag("File Check Results for LIT file")
        what = "Check-And-Repair" if isinstance(self._results, CheckAndRepairResults) else "Check"
        return tag(f"File {what} Results for SI={base32.b2a(check.storage_index)}")

    @renderer
    def status(self, request: Any, tag: Any) -> Any:
        if self._check.is_literal():
            return tag("Literal files are always healthy: their data is contained in the URI")
        return tag(_status(self._check))

    @renderer
    def repair(self, request: Any, tag: Any) -> Any:
        results = self._results
        if not isinstance(results, CheckAndRepairResults) or results.pre.is_literal():
            return ""
        if not results.repair_attempted:
            return tag("No repair necessary")
        if results.repair_successful:
            return tag("Repair successful")
        return tag("Repair unsuccessful", tags.div(results.repair_problem) if results.repair_problem else "")

    @renderer
    def details(self, request: Any, tag: Any) -> Any:
        results = self._results
        if self._check.is_literal():
            return ""
        if isinstance(results, CheckAndRepairResults):
            parts = []
            if results.repair_attempted:
                parts += [tags.div("Pre-Repair Checker Results:"), _details(results.pre)]
            parts += [tags.div("Post-Repair Checker Results:"), _status_div(results.post), _details(results.post)]
            return tag(*parts)
        return tag(_details(results))

    @renderer
    def return_to(self, request: Any, tag: Any) -> Any:
        if not self._return_to:
            return ""
        what = "file" if self._check.is_literal() else "file/directory"
        return tag(tags.a(f"Return to {what}.", href=self._return_to))


def _status_div(results: CheckResults) -> Any:
    return tags.div(_status(results))
