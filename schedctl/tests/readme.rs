//! The README's `schedctl` session is the real output of `schedctl --backend memory demo`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

#[test]
fn readme_session_is_the_demo_output() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let begin = "<!-- schedctl demo: begin -->\n```console\n$ schedctl --backend memory demo\n";
    let start = readme.find(begin).expect("README has the demo block") + begin.len();
    let len = readme[start..]
        .find("```\n<!-- schedctl demo: end -->")
        .expect("the block ends");
    let r = common::memory(&["demo"]).expect(0);
    assert_eq!(
        readme[start..start + len],
        r.stdout,
        "README.md's schedctl session differs from `schedctl --backend memory demo`; paste the new output"
    );
}
