package io.sessionrepl.tomcat;

import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import jakarta.servlet.http.HttpSession;

import java.io.IOException;

/**
 * The tiny webapp of the Tomcat tests: {@code GET /count} increments the
 * session's counter, {@code GET /count?op=read} only reads it; the answer
 * is {@code count=N node=NAME}; {@code ?op=rotate} changes the session id,
 * {@code ?op=logout} invalidates the session, {@code ?op=events} shows
 * what {@link CountingListener} counted on this node.
 */
public class CounterServlet extends HttpServlet {
    private static final long serialVersionUID = 1L;

    @Override
    protected void doGet(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        String op = req.getParameter("op");
        if ("events".equals(op)) {
            resp.setContentType("text/plain");
            resp.getWriter().print(CountingListener.counts() + " node=" + System.getProperty("sessionrepl.test.node"));
            return;
        }
        if ("rotate".equals(op)) {
            req.getSession(false);
            String id = req.changeSessionId();
            resp.setContentType("text/plain");
            resp.getWriter().print("rotated=" + id + " node=" + System.getProperty("sessionrepl.test.node"));
            return;
        }
        if ("logout".equals(op)) {
            HttpSession s = req.getSession(false);
            if (s != null) {
                s.invalidate();
            }
            resp.setContentType("text/plain");
            resp.getWriter().print("logout node=" + System.getProperty("sessionrepl.test.node"));
            return;
        }
        boolean read = "read".equals(op);
        HttpSession s = req.getSession(!read);
        Integer c = s == null ? null : (Integer) s.getAttribute("count");
        if (!read) {
            c = c == null ? 1 : c + 1;
            s.setAttribute("count", c);
        }
        resp.setContentType("text/plain");
        resp.getWriter().print("count=" + c + " node=" + System.getProperty("sessionrepl.test.node"));
    }
}
