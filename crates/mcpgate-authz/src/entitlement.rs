//! Entitlements seen from outside the authorization server: which scopes a
//! token's holder could never be granted (`grantable_to`). The gateway asks
//! before a step-up, so a user who can never get a tool's scope is told so
//! instead of being sent round the authorization loop again.

use mcpgate_store::StoreError;
use mcpgate_types::ScopeSet;

use crate::settings::Holder;
use crate::state::AppState;

impl AppState {
    /// Of `scopes`, those the holder of a token of `issuer` with subject
    /// `subject` (a user id, or a client id for `client_credentials` tokens
    /// issued to `client_id`) may not be granted for `resource`. Another
    /// issuer's tokens, unknown holders and store failures withhold
    /// nothing: the step-up then goes ahead and the token endpoint applies
    /// the rules.
    pub async fn withheld(
        &self,
        issuer: &str,
        subject: &str,
        client_id: &str,
        resource: &str,
        scopes: &ScopeSet,
    ) -> ScopeSet {
        if issuer != self.settings.issuer {
            return ScopeSet::new();
        }
        let not = |h: Holder<'_>| scopes.difference(&self.settings.entitled(h, scopes, resource));
        match self.store.get_user(subject).await {
            Ok(u) => not(Holder::User(&u)),
            Err(StoreError::NotFound) if subject == client_id => not(Holder::Client(client_id)),
            Err(StoreError::NotFound) => ScopeSet::new(),
            Err(e) => {
                tracing::warn!(error = %e, "entitlements could not be read");
                ScopeSet::new()
            }
        }
    }
}
