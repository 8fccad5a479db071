//! Sign-in across hosts: the route host's sign-in redirect and handoff, the authenticate host's sign-in, IdP
//! callback and sign-out.

pub mod idtoken;
pub mod oidc;
