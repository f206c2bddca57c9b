"""The API documentation page in a real browser: Swagger UI, served by the
app itself, renders the operations under the app's CSP with no violation and
no console error, and the page asks nothing of any other origin."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_swagger_ui_renders_the_operations_with_no_csp_error(
    server: Any, actors: Any, guard: Any
) -> None:
    page = actors("reader", server.url)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    response = page.goto("/docs")
    assert response is not None and response.status == 200
    login = page.locator(".opblock", has_text="/api/v1/login").first
    expect(login).to_be_visible()
    assert page.locator(".opblock").count() >= 20  # every operation, not a stub
    # Opening an operation renders its schema (the part that styles the most).
    login.locator(".opblock-summary").click()
    expect(login.get_by_role("button", name="Try it out")).to_be_visible()
    expect(page.locator(".models, .opblock-section-request-body").first).to_be_visible()
    # Trying it out renders a live answer (highlighted JSON: more styling).
    guard.allow(r"status of 401 \(Unauthorized\) \(http://[^)]+/api/v1/login\)")
    login.get_by_role("button", name="Try it out").click()
    login.get_by_role("button", name="Execute").click()
    answer = login.locator(".live-responses-table tbody .response-col_status").first
    expect(answer).to_have_text("401")  # the example's name and password are wrong
    # A schema opened from the list at the bottom.
    schema = page.locator("section.models article", has_text="CardCreate").first
    schema.scroll_into_view_if_needed()
    schema.get_by_role("button", name="Expand all").click()
    expect(schema.get_by_text("focus_area_id").first).to_be_visible()
    page.wait_for_load_state("networkidle")
    elsewhere = [u for u in asked if not u.startswith((server.url, "data:"))]
    assert elsewhere == [], elsewhere
    guard.assert_clean()
    assert guard.csp_seen == 0
