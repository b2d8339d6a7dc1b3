"""The API's interactive documentation at `/v1/docs`, served entirely by the service.

Swagger UI 5 (it reads the OpenAPI 3.1 FastAPI writes) comes from the `swagger-ui-bundle-v2`
package, pinned in pyproject.toml, mounted as static files under `/v1/docs/assets`: the page
works offline and asks no other host for anything (no CDN, no favicon from elsewhere, and no
badge from Swagger's online validator: `validatorUrl` is off)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs/assets"


def install(app: FastAPI) -> None:
    """Add `/docs` and its assets to `app` (before any catch-all route)."""
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        assets = f"{root}{ASSETS}"
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - docs",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None})
