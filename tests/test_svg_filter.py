"""The SVG filter of the media library (central/media.py check_svg): the gaps found from outside.

An animation names the attribute it changes as a QName: whether "foo:href" is XLink's href
depends on the namespace `foo` is bound to, never on how the prefix is spelled. CSS loads
images through more than url(): image-set() takes a bare string.
"""

from __future__ import annotations

import pytest

from central.media import MediaRejected, check_svg

XLINK = "http://www.w3.org/1999/xlink"


def svg(body: str, attrs: str = "") -> bytes:
    return f'<svg xmlns="http://www.w3.org/2000/svg" {attrs}>{body}</svg>'.encode()


REFUSED = {
    "set on a renamed XLink prefix": svg(
        '<a><set attributeName="foo:href" to="https://evil.test/"/><text>go</text></a>',
        f'xmlns:foo="{XLINK}"',
    ),
    "animate on a renamed XLink prefix declared lower down": svg(
        f'<g xmlns:l="{XLINK}"><a><animate attributeName="l:href" values="https://e.test/"/>'
        "</a></g>"
    ),
    "an animation on a prefix bound to nothing": svg(
        '<a><set attributeName="zz:href" to="https://evil.test/"/></a>'
    ),
    "javascript: with a tab in it": svg(
        '<a><set attributeName="fill" to="java&#9;script:alert(1)"/></a>'
    ),
    "image-set() in a style attribute": svg(
        "<rect style=\"background-image: image-set('https://x.test/a.png' 1x)\"/>"
    ),
    "-webkit-image-set() in a style element": svg(
        '<style>rect { background: -webkit-image-set("https://x.test/a.png" 1x) }</style>'
    ),
    "a CSS-escaped url()": svg("<style>rect { background: \\75 rl(https://x.test/a.png) }</style>"),
    "url() in a presentation attribute": svg('<rect fill="url(https://x.test/p.svg#g)"/>'),
}

ACCEPTED = {
    "href animated in another namespace": svg(
        '<a><set attributeName="o:href" to="#x"/></a>', 'xmlns:o="http://example.org/ns"'
    ),
    "a colour animated": svg('<rect><set attributeName="fill" to="red"/></rect>'),
    "a label that mentions an image (1)": svg('<rect aria-label="an image (1)" fill="url(#g)"/>'),
    "an inline image in image-less CSS": svg(
        "<rect style=\"fill: url('data:image/png;base64,AAAA')\"/>"
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_an_svg_that_could_load_or_run_something_is_refused(case: str) -> None:
    with pytest.raises(MediaRejected) as info:
        check_svg(REFUSED[case])
    assert info.value.reason == "svg"


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_an_svg_that_only_animates_or_refers_to_itself_is_accepted(case: str) -> None:
    check_svg(ACCEPTED[case])
