//! The interpreter matrix itself: every interpreter DESIGN.md names is here and runs.

#[test]
fn every_interpreter_of_the_matrix_runs_and_reports_its_version() {
    for interp in e2e::matrix() {
        let out = e2e::run_python(
            &interp.path,
            "import sys; print(sys.version_info[0], sys.version_info[1])",
            &[],
        );
        assert_eq!(
            out.trim(),
            format!("3 {}", interp.minor),
            "{}",
            interp.label
        );
    }
}
