# The same steps as `make run`: install the project, migrate, serve.
# WeasyPrint needs Pango (and fonts covering Latin-extended and Cyrillic).
FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/lessons
COPY . .
RUN pip install --no-cache-dir -e .
ENV LESSONS_ENV=production LESSONS_DATA_DIR=/data LESSONS_PUBLIC_URL=http://localhost:8000
VOLUME ["/data"]
EXPOSE 8000
# SECRET_KEY must be given at run time (docker run -e SECRET_KEY=...).
CMD ["sh", "-c", "lessons db upgrade && lessons serve --host 0.0.0.0 --port 8000"]
