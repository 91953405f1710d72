package io.sessionrepl.tomcat;

import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import jakarta.servlet.http.HttpSession;

import java.io.IOException;

/**
 * The tiny webapp of the Tomcat tests: {@code GET /count} increments the
 * session's counter, {@code GET /count?op=read} only reads it; the answer
 * is {@code count=N node=NAME}.
 */
public class CounterServlet extends HttpServlet {
    private static final long serialVersionUID = 1L;

    @Override
    protected void doGet(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        boolean read = "read".equals(req.getParameter("op"));
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
