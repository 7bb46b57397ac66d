"""Secure defaults with DEBUG off (HTTPS assumed), HTTPS=0 for plain-HTTP rigs, the
Content-Security-Policy our pages live under, and seed_demo's refusal of demo passwords."""

import json
import os
import re
import secrets
import string
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from core.csp import policy_with_inline_styles

ROOT = Path(__file__).resolve().parents[2]
SECURITY_SETTINGS = [
    "SECURE_SSL_REDIRECT",
    "SECURE_PROXY_SSL_HEADER",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "X_FRAME_OPTIONS",
    "CONTENT_SECURITY_POLICY",
]


def random_secret_key() -> str:
    alphabet = string.ascii_letters + string.digits + "!@#%^&*(-_=+)"
    return "".join(secrets.choice(alphabet) for _ in range(50))


def environment(**env: str) -> dict[str, str]:
    """This environment without the variables the tests choose."""
    chosen = {"DEBUG", "HTTPS", "SECRET_KEY", "ALLOWED_HOSTS", "SECURE_HSTS_SECONDS"}
    return {**{k: v for k, v in os.environ.items() if k not in chosen}, **env}


def settings_with(**env: str) -> dict:
    code = (
        "import json; from config import settings as s; "
        f"print(json.dumps({{name: getattr(s, name) for name in {SECURITY_SETTINGS!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=environment(**env), cwd=ROOT, check=True,
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out)


def test_debug_off_assumes_https_without_extra_flags():
    values = settings_with(DEBUG="0")
    assert values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert values["SESSION_COOKIE_SECURE"] is values["CSRF_COOKIE_SECURE"] is True
    assert values["SECURE_HSTS_SECONDS"] == 365 * 24 * 3600
    assert values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert values["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert values["X_FRAME_OPTIONS"] == "DENY"
    assert "script-src 'self'" in values["CONTENT_SECURITY_POLICY"]


def test_https_0_runs_plain_http_with_the_other_production_settings():
    values = settings_with(DEBUG="0", HTTPS="0")
    assert values["SECURE_SSL_REDIRECT"] is False
    assert values["SESSION_COOKIE_SECURE"] is values["CSRF_COOKIE_SECURE"] is False
    assert values["SECURE_HSTS_SECONDS"] == 0
    assert values["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert values["X_FRAME_OPTIONS"] == "DENY"
    assert values["CONTENT_SECURITY_POLICY"] == settings_with(DEBUG="0")["CONTENT_SECURITY_POLICY"]


def test_debug_on_runs_plain_http():
    assert settings_with(DEBUG="1")["SECURE_SSL_REDIRECT"] is False


def test_check_deploy_is_clean_but_for_hsts_preload():
    """`manage.py check --deploy` with DEBUG off: only W021 (HSTS preload, an opt-in the README
    explains) among Django's security checks."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--tag", "security"],
        env=environment(DEBUG="0", SECRET_KEY=random_secret_key(), ALLOWED_HOSTS="example.com"),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    found = set(re.findall(r"security\.[WE]\d+", result.stdout + result.stderr))
    assert found == {"security.W021"}, result.stdout + result.stderr


@pytest.mark.django_db
def test_plain_http_is_redirected_and_https_gets_hsts_secure_cookies_and_the_policy(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.CSRF_COOKIE_SECURE = True
    redirect = Client().get("/accounts/login/")
    assert redirect.status_code == 301
    assert redirect["Location"] == "https://testserver/accounts/login/"

    page = Client().get("/accounts/login/", headers={"X-Forwarded-Proto": "https"})
    assert page.status_code == 200
    assert page["Strict-Transport-Security"] == "max-age=3600; includeSubDomains"
    assert page["X-Frame-Options"] == "DENY"
    assert page["X-Content-Type-Options"] == "nosniff"
    assert page["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY
    assert page.cookies["csrftoken"]["secure"] is True


@pytest.mark.django_db
def test_only_the_admin_and_api_docs_may_use_inline_styles_and_no_page_inline_scripts():
    ours = Client().get("/accounts/login/")["Content-Security-Policy"]
    admin = Client().get("/admin/login/")["Content-Security-Policy"]
    assert "'unsafe-inline'" not in ours
    assert "style-src 'self' 'unsafe-inline'" in admin
    assert "script-src 'self';" in admin and "frame-ancestors 'none'" in admin


def test_policy_with_inline_styles_adds_to_style_src_or_default_src():
    assert policy_with_inline_styles("default-src 'self'; style-src 'self'") == (
        "default-src 'self'; style-src 'self' 'unsafe-inline'"
    )
    assert policy_with_inline_styles("default-src 'self' data:") == (
        "default-src 'self' data:; style-src 'self' data: 'unsafe-inline'"
    )


INLINE_IN_TEMPLATES = [
    (re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I), "inline script"),
    (re.compile(r"<style\b", re.I), "<style> block"),
    (re.compile(r"\sstyle\s*=", re.I), "style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "inline event handler"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]
INLINE_IN_SCRIPTS = [
    (re.compile(r"""setAttribute\(\s*["']style["']"""), "style attribute"),
    (re.compile(r"""[{,]\s*style\s*:"""), "style attribute (element helpers)"),
    (re.compile(r"\b(eval|new Function)\s*\("), "eval"),
]


def test_pages_have_no_inline_scripts_or_styles_the_policy_would_refuse():
    found = []
    for folder, patterns, glob in (
        (ROOT / "templates", INLINE_IN_TEMPLATES, "**/*.html"),
        (ROOT / "static" / "js", INLINE_IN_SCRIPTS, "**/*.js"),
    ):
        for file in folder.glob(glob):
            text = file.read_text()
            found += [
                f"{file.relative_to(ROOT)}: {what}" for rx, what in patterns if rx.search(text)
            ]
    assert found == []


@pytest.mark.django_db
def test_seed_demo_refuses_demo_passwords_with_debug_off(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="--allow-demo-passwords"):
        call_command("seed_demo", "--no-train")
    assert not User.objects.exists()
    call_command("seed_demo", "--no-train", "--allow-demo-passwords")
    assert User.objects.get(username="inspector").check_password("inspector-demo")


@pytest.mark.django_db
def test_seed_demo_creates_demo_passwords_with_debug_on(settings):
    settings.DEBUG = True
    call_command("seed_demo", "--no-train")
    assert User.objects.filter(username="supervisor").exists()
