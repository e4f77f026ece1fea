"""The ranking page's server side: Markdown rendering, the page itself, and CSRF on the calls it makes."""

import json
import time

import pytest
from django.test import Client
from django.urls import reverse

from annotation.markdown import render_markdown
from tests.factories import ItemFactory, ProjectFactory, UserFactory

PASSWORD = "correct horse battery staple"


def test_render_markdown_renders_common_markdown():
    html = render_markdown("Use **bold**, `code` and a [link](https://example.org).\n\n- one\n- two")

    assert "<strong>bold</strong>" in html
    assert "<code>code</code>" in html
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">link</a>' in html
    assert "<li>one</li>" in html


def test_render_markdown_shows_script_tags_as_text():
    html = render_markdown("<script>window.pwned=1</script>")

    assert "<script" not in html
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html


def test_render_markdown_shows_img_onerror_as_text():
    html = render_markdown('Look: <img src=x onerror="window.pwned=1"> and <b>bold</b>')

    assert "<img" not in html
    assert "<b>" not in html
    assert "&lt;img src=x onerror=" in html


def test_render_markdown_drops_javascript_links():
    html = render_markdown("[click](javascript:alert(1)) [data](data:text/html,<script>x</script>)")

    assert "javascript:" not in html
    assert "data:" not in html
    assert "click" in html


def test_render_markdown_keeps_angle_brackets_in_code_and_quotes():
    html = render_markdown("> quoted\n\n```\nif a < b and c > d: print('<x>')\n```")

    assert "<blockquote>" in html
    assert "if a &lt; b and c &gt; d" in html


def test_render_markdown_of_empty_text_is_empty():
    assert render_markdown("") == ""


def test_emphasis_heavy_text_over_the_size_limit_is_shown_as_written_at_once():
    # 400 kB of emphasis took Python-Markdown 36 s (issue #12); over MARKDOWN_MAX_CHARS it is not converted.
    text = "*b* " * 100_000 + "\n<script>alert(1)</script>\nlast line"
    started = time.thread_time()

    html = render_markdown(text)

    assert time.thread_time() - started < 0.5
    assert html.startswith('<p class="format-note"><em>This text is too long to format (400,036 characters;')
    assert "<em>b</em>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\nlast line</pre>" in html
    assert "<script>" not in html


def test_text_that_converts_slowly_stops_at_the_cpu_limit_and_shows_as_written(settings):
    # Within the size limit, but each unclosed `[` scans the rest of the text: 20,000 of them took 33 s.
    text = "[" * 20_000 + " <b>unclosed"
    assert len(text) <= settings.MARKDOWN_MAX_CHARS
    started = time.thread_time()

    html = render_markdown(text)

    assert time.thread_time() - started < settings.MARKDOWN_MAX_CPU_MS / 1000 + 0.5
    assert html.startswith('<p class="format-note"><em>This text took too long to format')
    assert html.endswith("[[[ &lt;b&gt;unclosed</pre>")
    # The converter abandoned midway is not reused: the next text renders as usual.
    assert render_markdown("**after**\n\n- one\n- two") == (
        "<p><strong>after</strong></p>\n<ul>\n<li>one</li>\n<li>two</li>\n</ul>"
    )


def test_the_size_limit_is_a_setting(settings):
    settings.MARKDOWN_MAX_CHARS = 10

    assert render_markdown("**short**") == "<p><strong>short</strong></p>"
    assert "too long to format (11 characters; the limit is 10)" in render_markdown("**longer**!")


@pytest.mark.django_db
def test_rank_page_asks_anonymous_visitors_to_log_in():
    project = ProjectFactory()

    response = Client().get(reverse("rank", args=[project.pk]))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_rank_page_shows_the_project_guidelines_rendered_and_sanitised():
    project = ProjectFactory(guidelines="Prefer **honest** answers. <script>alert(1)</script>")
    client = Client()
    client.force_login(UserFactory())

    response = client.get(reverse("rank", args=[project.pk]))

    assert response.status_code == 200
    content = response.content.decode()
    assert "<strong>honest</strong>" in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "<script>alert(1)" not in content
    script = content.split('id="rank-settings" type="application/json">')[1]
    settings = json.loads(script.split("</script>")[0])
    assert settings["project_id"] == project.pk
    assert settings["allow_ties"] is True
    assert settings["next_url"] == f"/api/projects/{project.pk}/next/"
    assert settings["submit_url_template"] == "/api/assignments/{id}/submit/"
    assert response.cookies["csrftoken"].value


@pytest.mark.django_db
def test_rank_page_shows_guidelines_too_long_to_format_as_written(settings):
    settings.MARKDOWN_MAX_CHARS = 100
    project = ProjectFactory(guidelines="Prefer *honest* answers.\n" * 10)
    client = Client()
    client.force_login(UserFactory())

    content = client.get(reverse("rank", args=[project.pk])).content.decode()

    assert "This text is too long to format (250 characters; the limit is 100)" in content
    assert '<pre class="plain-text">Prefer *honest* answers.\nPrefer *honest*' in content


@pytest.mark.django_db
def test_rank_page_offers_no_tie_controls_when_the_project_forbids_ties():
    project = ProjectFactory(allow_ties=False)
    client = Client()
    client.force_login(UserFactory())

    content = client.get(reverse("rank", args=[project.pk])).content.decode()

    assert "data-tie " not in content
    assert "ties it with the answer above" not in content
    assert '"allow_ties": false' in content


@pytest.mark.django_db
def test_rank_page_of_an_inactive_project_is_not_found():
    project = ProjectFactory(is_active=False)
    client = Client()
    client.force_login(UserFactory())

    assert client.get(reverse("rank", args=[project.pk])).status_code == 404


@pytest.mark.django_db
def test_home_links_each_project_to_its_ranking_page():
    project = ProjectFactory()
    client = Client()
    client.force_login(UserFactory())

    response = client.get(reverse("home"))

    assert reverse("rank", args=[project.pk]) in response.content.decode()


@pytest.mark.django_db
def test_page_posts_without_the_csrf_token_are_refused():
    project = ProjectFactory()
    ItemFactory(project=project)
    user = UserFactory()
    client = Client(enforce_csrf_checks=True)
    # Logged in through the login form, as the page's user is: a session cookie, no token sent.
    login_page = client.get(reverse("login"))
    token = login_page.cookies["csrftoken"].value
    credentials = {"username": user.username, "password": PASSWORD, "csrfmiddlewaretoken": token}
    assert client.post(reverse("login"), credentials).status_code == 302
    next_url = reverse("assignment-next", args=[project.pk])

    refused = client.post(next_url, content_type="application/json")

    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    # The same request with the token the page reads from its cookie goes through.
    page = client.get(reverse("rank", args=[project.pk]))
    token = page.cookies.get("csrftoken", client.cookies["csrftoken"]).value
    accepted = client.post(next_url, content_type="application/json", headers={"X-CSRFToken": token})
    assert accepted.status_code == 200
    assignment = accepted.json()["assignment"]
    assert assignment is not None
    submit_refused = client.post(
        reverse("assignment-submit", args=[assignment["id"]]),
        data={"order": [[answer["id"]] for answer in assignment["answers"]]},
        content_type="application/json",
    )
    assert submit_refused.status_code == 403
    skip_url = reverse("assignment-skip", args=[assignment["id"]])
    skip_refused = client.post(skip_url, content_type="application/json")
    assert skip_refused.status_code == 403
