package io.sessionrepl;

/** Told membership changes, in order, on membership's own thread. */
@FunctionalInterface
public interface MemberListener {
    /** @param e the change */
    void onMemberEvent(MemberEvent e);
}
